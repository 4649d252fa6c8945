from keyrun.cli import main

main()

"""The source contract suite, for keyrun's own sources and third-party ones.

Subclass :class:`SourceContract` in a test module and implement the ``harness``
fixture; pytest then runs every contract test against your backend::

    from keyrun.testing import Harness, SourceContract

    class TestMySource(SourceContract):
        @pytest.fixture
        def harness(self, my_server) -> Harness:
            return MyHarness(my_server)

A harness stores values in the real backend and builds a configured source that reads
them. The suite checks what every source must do: present, missing, many keys at
once, unicode, multi-line and large values, empty strings, errors wrapped in
``SourceError`` with no value in any message, and the ``write`` round trip.
"""

from __future__ import annotations

from keyrun.testing.contract import Harness, SourceContract

__all__ = ["Harness", "SourceContract"]

"""What ``doctor`` may learn of another environment without reading its remote values
(SPEC §4 ``shared-values``: least privilege).

A CI identity checking its own environment must not need read access to production. So,
without ``--all-envs``, another environment is seen through :func:`local_view`: each key's
sources up to its first remote one, read where they are local files or the local keychain,
and the remote one after them only named. A key that both environments read from the same
backend item is the finding itself, known without reading it (:func:`item_identity`).
"""

from __future__ import annotations

from typing import NamedTuple

from keyrun.profile import Profile
from keyrun.sources import Request, Source


class LocalView(NamedTuple):
    """Another environment as far as it may be read: ``profile`` keeps its local sources
    only (and the keys they may hold), and ``remote`` names, for every key, the remote
    source the key would come from when the local ones lack it (None: it has none)."""

    profile: Profile
    remote: dict[str, str | None]
    whole: Profile  # the environment as configured, for naming its remote items


def local_view(profile: Profile) -> LocalView:
    """``profile`` cut down to its local sources: each key's candidates up to the first
    remote one (the first source that has a key wins, so later ones never decide it)."""
    bindings = []
    remote: dict[str, str | None] = {}
    for binding in profile.bindings:
        local: list[str] = []
        remote[binding.key] = None
        for name in binding.candidates:
            if profile.sources[name].remote:
                remote[binding.key] = name
                break
            local.append(name)
        if local:
            bindings.append(binding._replace(candidates=tuple(local)))
    sources = {name: source for name, source in profile.sources.items() if not source.remote}
    return LocalView(profile._replace(bindings=tuple(bindings), sources=sources), remote,
                     profile)


def item_identity(source: Source, request: Request) -> tuple[str, ...]:
    """What names one backend item across environments: the source's type, its settings
    as its environment renders them (the store: URL, region, project…), and the item's
    identity in that store. Equal identities are one item, read by both environments."""
    templated = {option.name for option in source.options if option.template}
    settings = []
    for option, value in sorted(source.settings.items()):
        if option in templated and isinstance(value, str) and "{key}" not in value:
            value = source.render(option)
        settings.append(f"{option}={value!r}")
    return (source.type_name, *settings, source.identity(request))


def same_item(mine: Profile, source: str, theirs: Profile, their_source: str,
              key: str) -> bool:
    """Whether ``key`` is one backend item in both environments: ``source`` of ``mine``
    (where it was read) and ``their_source`` of ``theirs`` (where it would be)."""
    binding = next((b for b in theirs.bindings if b.key == key), None)
    own = next(b for b in mine.bindings if b.key == key)
    if binding is None:
        return False
    return (item_identity(mine.sources[source], mine.request(own, source))
            == item_identity(theirs.sources[their_source], theirs.request(binding, their_source)))


__all__ = ["LocalView", "item_identity", "local_view", "same_item"]

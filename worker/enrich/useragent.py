"""User-agent string -> browser, OS, device and device type.

Classification (mobile / tablet / desktop / bot) is user-agents'. Its own ``parse`` goes
through ua-parser's legacy API, which tries the rules as Python regexes one by one
(measured ~1,700 unseen strings/s). ua-parser 1.x resolves the same rules with a native
matcher when ``ua-parser-rs`` is installed (~40,000/s whole parse here, see
``bench/enrich.py``), so we resolve with ua-parser's best available resolver and hand
the result to user-agents' ``UserAgent`` for its classification properties.
``engine="basic"`` (ua-parser's pure-Python resolver) and ``engine="legacy"``
(user-agents' own path) remain for comparison and as fallbacks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import msgspec
import ua_parser
from ua_parser import Domain, Resolver
from user_agents.parsers import UserAgent, parse_browser, parse_device, parse_operating_system

from worker.enrich.bots import is_automated_agent

DeviceType = Literal["mobile", "tablet", "desktop", "bot", "other"]
Engine = Literal["best", "basic", "legacy"]


class UserAgentInfo(msgspec.Struct, frozen=True):
    browser_family: str
    browser_version: str | None
    os_family: str
    os_version: str | None
    device_family: str
    device_brand: str | None
    device_model: str | None
    device_type: DeviceType
    is_bot: bool


class _ResolvedAgent(UserAgent):  # type: ignore[misc]
    """user-agents' ``UserAgent`` built from a ua-parser 1.x result instead of re-parsing."""

    def __init__(self, ua: str, resolved: ua_parser.DefaultedResult) -> None:
        # No super().__init__(): it would parse again with the legacy regexes.
        browser, os, device = resolved.user_agent, resolved.os, resolved.device
        self.ua_string = ua
        self.browser = parse_browser(
            browser.family, browser.major, browser.minor, browser.patch, browser.patch_minor
        )
        self.os = parse_operating_system(os.family, os.major, os.minor, os.patch, os.patch_minor)
        self.device = parse_device(device.family, device.brand, device.model)


def _build_resolver(engine: Engine) -> Resolver | None:
    if engine == "legacy":
        return None
    if engine == "best" and ua_parser.RegexResolver is not None:
        # The native resolver compiles the rules itself: skip compiling them in Python.
        return ua_parser.RegexResolver(ua_parser.load_lazy_builtins())
    return ua_parser.BasicResolver(ua_parser.load_builtins())


def _device_type(agent: UserAgent, is_bot: bool) -> DeviceType:
    if is_bot:
        return "bot"
    if agent.is_tablet:
        return "tablet"
    if agent.is_mobile:
        return "mobile"
    if agent.is_pc:
        return "desktop"
    return "other"


class UserAgentParser:
    """Parses user-agent strings; one per worker process (building it compiles the rules).

    Each distinct string (after truncation to ``max_length``, a guard against regex
    blow-up on crafted input) is parsed once and kept in a bounded LRU cache.
    """

    def __init__(
        self, cache_size: int = 4096, max_length: int = 512, *, engine: Engine = "best"
    ) -> None:
        self.max_length = max_length
        self.engine = engine
        self._resolver = _build_resolver(engine)
        # cache_size=0: no cache here (the caller caches what it derives from the result).
        self._cache = (
            functools.lru_cache(maxsize=cache_size)(self._parse_uncached) if cache_size else None
        )
        self._cached: Callable[[str], UserAgentInfo] = self._cache or self._parse_uncached

    @property
    def is_native(self) -> bool:
        """Whether strings are resolved by the native (ua-parser-rs) matcher."""
        return (
            ua_parser.RegexResolver is not None
            and type(self._resolver).__module__ == "ua_parser.regex"
        )

    def parse(self, ua: str | None) -> UserAgentInfo | None:
        """Parse ``ua``; ``None`` for a missing or blank string."""
        if ua is None:
            return None
        ua = ua[: self.max_length].strip()
        if not ua:
            return None
        return self._cached(ua)

    def cache_clear(self) -> None:
        if self._cache is not None:
            self._cache.cache_clear()

    def _resolve(self, ua: str) -> UserAgent:
        if self._resolver is None:
            return UserAgent(ua)
        resolved = self._resolver(ua, Domain.ALL).complete().with_defaults()
        return _ResolvedAgent(ua, resolved)

    def _parse_uncached(self, ua: str) -> UserAgentInfo:
        agent = self._resolve(ua)
        is_bot = bool(agent.is_bot) or is_automated_agent(ua)
        return UserAgentInfo(
            browser_family=agent.browser.family,
            browser_version=agent.browser.version_string or None,
            os_family=agent.os.family,
            os_version=agent.os.version_string or None,
            device_family=agent.device.family,
            device_brand=agent.device.brand or None,
            device_model=agent.device.model or None,
            device_type=_device_type(agent, is_bot),
            is_bot=is_bot,
        )

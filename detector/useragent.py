"""User-agent families (browser, OS, device type) via the maintained ua-parser rules.

Only families are kept: versions change with every update and would make a user's own
browser look new every month.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse


@dataclass(frozen=True, slots=True)
class UAFamily:
    browser: str
    os: str
    device_type: str          # desktop | mobile | tablet | other

    @property
    def os_key(self) -> str:
        return f"{self.os}|{self.device_type}"

    @property
    def browser_key(self) -> str:
        return f"{self.browser}|{self.os}|{self.device_type}"


_MOBILE_OS = {"iOS", "Android", "iPadOS", "Windows Phone", "HarmonyOS", "KaiOS"}
_DESKTOP_OS = {"Windows", "Mac OS X", "macOS", "Linux", "Ubuntu", "Chrome OS", "ChromeOS",
               "Fedora", "Debian", "FreeBSD"}


def _device_type(ua: str, os_family: str, device_family: str) -> str:
    device = device_family.lower()
    if "ipad" in device or "tablet" in device or "kindle" in device:
        return "tablet"
    if os_family in _MOBILE_OS:
        if os_family == "Android" and "Mobile" not in ua:
            return "tablet"
        return "mobile"
    if os_family in _DESKTOP_OS:
        return "desktop"
    return "other"


@lru_cache(maxsize=65536)
def ua_family(ua: str | None) -> UAFamily | None:
    """Parse a User-Agent header into families; None when absent or empty."""
    if not ua:
        return None
    result = parse(ua)
    browser = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    device_family = result.device.family if result.device else "Other"
    return UAFamily(browser, os_family, _device_type(ua, os_family, device_family))

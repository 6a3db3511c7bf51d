"""A headless Debian chromium driven by Selenium, for the chat page and /docs.

Elements are found by what a screen reader would announce (aria-label, a
label's text, a button's name, a role), never by ids or classes, so the tests
hold the page to the accessible names the issue lists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, and none of chromium's own connections (updates, sync, safe
# browsing): nothing may leave the machine, and here they would be refused.
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
)


def browser_available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def literal(text: str) -> str:
    """`text` as an XPath string literal (no quoting tricks needed here)."""
    assert '"' not in text
    return f'"{text}"'


class Browser:
    """One chromium for the whole test session; each test starts with `open`."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="piagent-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (*ARGUMENTS, f"--user-data-dir={self.profile}"):
            options.add_argument(argument)
        options.set_capability(
            "goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"}
        )
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(10)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- Navigation and state ------------------------------------------------

    def open(self, url: str, *, clear_storage: bool = True) -> None:
        """Load `url` as a fresh visitor: default viewport and colours, empty
        localStorage for its origin; the logs then start with this load."""
        self.viewport(None)
        self.color_scheme("light")
        if clear_storage:
            self.driver.get(url)
            self.driver.execute_script("localStorage.clear()")
        self.logs()
        self.driver.get(url)

    def reload(self) -> None:
        self.driver.refresh()

    def viewport(self, width: int | None, height: int = 740) -> None:
        """A phone-sized viewport (`width` CSS pixels), or the default."""
        if width is None:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            return
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
        )

    def color_scheme(self, scheme: str) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    # --- Finding by accessible name ---------------------------------------

    def xpath(self, expression: str, timeout: float = 5.0) -> Any:
        from selenium.webdriver.common.by import By

        return self.wait(
            lambda: next(iter(self.driver.find_elements(By.XPATH, expression)), None),
            timeout,
            f"no element at {expression}",
        )

    def labelled(self, name: str, timeout: float = 5.0) -> Any:
        """A form control by its label: aria-label, or a <label for=...>."""
        n = literal(name)
        return self.xpath(
            f"//*[@aria-label={n}] | //*[@id=//label[normalize-space()={n}]/@for]",
            timeout,
        )

    def button(self, name: str, timeout: float = 5.0) -> Any:
        n = literal(name)
        return self.xpath(
            f"//button[normalize-space()={n} or @aria-label={n}]", timeout
        )

    def role(self, role: str, timeout: float = 5.0) -> Any:
        return self.xpath(f"//*[@role={literal(role)}]", timeout)

    def wait(
        self, probe: Callable[[], Any], timeout: float = 5.0, what: str = ""
    ) -> Any:
        """Poll `probe` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s: {what}")
            time.sleep(0.05)

    # --- What the page did ---------------------------------------------------

    def logs(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(console entries, URLs requested) since the last call."""
        console = self.driver.get_log("browser")
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return console, urls

    def console_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, name: str, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

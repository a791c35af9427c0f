"""Headless Chromium through selenium, for the gallery tests: a driver whose downloads land in a
known folder (headless Chromium drops them unless told where, over CDP)."""
import os
import shutil
import tempfile
import time

import pytest


def find_browser():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    return None


def start_chromium(workdir, downloads):
    """A headless Chromium driver (skips the test where none is installed)."""
    browser, driver_path = find_browser(), shutil.which('chromedriver')
    if browser is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--window-size=1200,900',
                 f'--user-data-dir={tempfile.mkdtemp(dir=workdir)}'):
        options.add_argument(flag)
    options.add_experimental_option('prefs', {'download.default_directory': str(downloads),
                                              'download.prompt_for_download': False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd('Browser.setDownloadBehavior',
                           {'behavior': 'allow', 'downloadPath': str(downloads)})
    driver.set_page_load_timeout(60)
    return driver


def wait_for_download(folder, name, timeout=30):
    """The path of a finished download (Chromium writes NAME.crdownload, then renames)."""
    path = os.path.join(folder, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isfile(path) and not os.path.exists(path + '.crdownload'):
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded into {folder}: {os.listdir(folder)}")


def open_page(driver, out_dir):
    driver.get('file://' + os.path.join(os.path.abspath(out_dir), 'index.html'))

"""Fixtures shared by several test files."""
import pytest
import torch

from tests.browser import start_chromium


@pytest.fixture(scope='module')
def one_thread():
    """Small ops on a CPU shared with other processes: one thread beats two that wait. A test
    module asks for it with pytestmark = pytest.mark.usefixtures('one_thread')."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium driver whose downloads land in `driver.downloads` (the test is skipped
    where Chromium is not installed)."""
    downloads = tmp_path / 'downloads'
    downloads.mkdir()
    driver = start_chromium(tmp_path, downloads)
    driver.downloads = str(downloads)
    yield driver
    driver.quit()

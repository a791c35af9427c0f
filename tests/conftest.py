"""Fixtures shared by several test files."""
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """Small ops on a CPU shared with other processes: one thread beats two that wait. A test
    module asks for it with pytestmark = pytest.mark.usefixtures('one_thread')."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

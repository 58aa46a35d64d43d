import pytest

from compute import ssh


@pytest.fixture(autouse=True)
def fresh_pool():
    """Each VM test starts without pooled connections left by the one before."""
    ssh.pool.close_all()
    yield
    ssh.pool.close_all()

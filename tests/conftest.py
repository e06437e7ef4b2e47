"""Test-wide setup: 8 simulated CPU devices (for sharding tests) and paths to the shared sample data."""

import os
import pathlib

# Must be set before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(
    os.environ.get("CAME_JAX_DATA", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Root of ../shared/data (override with $CAME_JAX_DATA). Its absence is an error, never a skip."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"sample data not found at {SHARED_DATA}; set CAME_JAX_DATA")
    return SHARED_DATA

"""Unit tests of the status-code -> exception mapping and the version check (no library needed)."""

from __future__ import annotations

import pytest

import ratetrack
from ratetrack import _library
from ratetrack.errors import error_from_status


@pytest.mark.parametrize(
    "code, cls, name",
    [
        (-1, ratetrack.InvalidArgument, "RT_E_INVALID"),
        (-2, ratetrack.ConfigError, "RT_E_CONFIG"),
        (-3, ratetrack.TooLarge, "RT_E_TOO_LARGE"),
        (-4, ratetrack.BackendError, "RT_E_BACKEND"),
        (-5, ratetrack.NoMemory, "RT_E_NOMEM"),
        (-6, ratetrack.InternalError, "RT_E_INTERNAL"),
    ],
)
def test_every_status_code_has_its_class(code: int, cls: type, name: str) -> None:
    err = error_from_status(code, "detail")
    assert type(err) is cls
    assert isinstance(err, ratetrack.RateTrackError)
    assert err.code == code
    assert err.status == name
    assert err.message == "detail"
    assert str(err) == f"{name}: detail"


def test_unknown_code_is_the_base_class() -> None:
    err = error_from_status(-99, "what")
    assert type(err) is ratetrack.RateTrackError
    assert err.code == -99


def test_classes_are_distinct_and_idiomatic() -> None:
    classes = {ratetrack.InvalidArgument, ratetrack.ConfigError, ratetrack.TooLarge,
               ratetrack.BackendError, ratetrack.NoMemory, ratetrack.InternalError}
    assert len(classes) == 6
    assert issubclass(ratetrack.InvalidArgument, ValueError)
    assert issubclass(ratetrack.AcquireTimeout, TimeoutError)
    assert issubclass(ratetrack.LibraryNotFound, ratetrack.LibraryError)
    assert issubclass(ratetrack.VersionMismatch, ratetrack.LibraryError)
    assert not issubclass(ratetrack.TooLarge, ratetrack.InvalidArgument)


@pytest.mark.parametrize("number", [100, 101, 199])
def test_version_check_accepts_same_major_minor(number: int) -> None:
    _library.check_version(number, (0, 1))


@pytest.mark.parametrize("number, shown", [(200, "0.2.0"), (10100, "1.1.0"), (0, "0.0.0"), (10001, "1.0.1")])
def test_version_check_refuses_other_major_minor(number: int, shown: str) -> None:
    with pytest.raises(ratetrack.VersionMismatch) as info:
        _library.check_version(number, (0, 1))
    assert shown in str(info.value)
    assert "0.1" in str(info.value)
    assert info.value.code is None

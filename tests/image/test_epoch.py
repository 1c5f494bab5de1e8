import pytest

from builder.image.epoch import MAX_EPOCH, created_at, parse_epoch


@pytest.mark.parametrize(
    ("text", "value", "created"),
    [
        ("0", 0, "1970-01-01T00:00:00Z"),
        ("1700000000", 1_700_000_000, "2023-11-14T22:13:20Z"),
        ("0001700000000", 1_700_000_000, "2023-11-14T22:13:20Z"),  # leading zeros: decimal
        (str(MAX_EPOCH), MAX_EPOCH, "9999-12-31T23:59:59Z"),
    ],
)
def test_valid_epochs_and_their_created_text(text: str, value: int, created: str) -> None:
    assert parse_epoch(text) == value
    assert created_at(value) == created


@pytest.mark.parametrize(
    "text", ["", "-1", "+5", "1.5", "1e9", "0x10", " 1", "\u0663", str(MAX_EPOCH + 1)]
)
def test_invalid_epochs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_epoch(text)

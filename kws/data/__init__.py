"""Speech Commands clips on disk: listing and selecting clips, speaker-disjoint splits, download."""

from kws.errors import KwsError


class DatasetError(KwsError):
    """A dataset problem a user can fix: a missing folder, a bad WAV, an unknown split."""

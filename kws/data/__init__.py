"""Speech Commands clips on disk: listing and selecting clips, speaker-disjoint splits, download."""


class DatasetError(Exception):
    """A dataset problem a user can fix: a missing folder, a bad WAV, an unknown split."""

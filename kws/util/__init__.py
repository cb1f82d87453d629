"""Small helpers with no knowledge of keyword spotting."""

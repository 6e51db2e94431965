"""Media sync: a scheduled media library sync with stage-by-stage progress."""

"""The topic exploration report."""

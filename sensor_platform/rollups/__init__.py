"""Minute, hour and day aggregates of sensor readings, each level merged exactly from the one below."""

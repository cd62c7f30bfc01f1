"""Mapping passes: functions from graph to graph (compression, fusion, tiling, schedules)."""

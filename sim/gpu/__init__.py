"""Calibrated GPU model: kernel model, calibration on measurements, validation, speculation."""

from sim.gpu.simulate import calibration_for, simulate

__all__ = ["calibration_for", "simulate"]

"""Trackers (the Experiment Manager's plug-in system): see ``base.py``."""

from .base import Tracker, TrackerManager, TrackScope, tracker_class
from .log_tracker import LogTracker
from .mlflow_tracker import MLflowTracker
from .runstore_tracker import RunstoreTracker

__all__ = ["LogTracker", "MLflowTracker", "RunstoreTracker", "TrackScope", "Tracker", "TrackerManager",
           "tracker_class"]

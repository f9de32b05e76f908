"""Docket: a declarative controller that keeps Apache Mesos matching the objects in etcd."""

__version__ = "0.1.0"

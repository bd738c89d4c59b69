"""Stores: named key/value namespaces on filesystem, indexed tar or Redis."""

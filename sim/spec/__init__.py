"""The spec engine: typed values with positions, for every YAML file maillab reads.

A format (a topology file, a lab file, an experiment's parameters) is a
table of kinds (:mod:`sim.spec.kinds`) over YAML loaded with line and column
of every value (:mod:`sim.spec.yamlpos`); problems come out as
``PATH:LINE:COL: message`` in the words of :mod:`sim.spec.words`, and the
JSON Schema and the reference docs are generated from the same table
(:mod:`sim.spec.document`).
"""

"""Pipeline stages: one module per stage, each a config dataclass plus a typed function returning its artifact."""

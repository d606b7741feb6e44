"""A plugin whose import fails."""

raise RuntimeError("the plugin's own bug")

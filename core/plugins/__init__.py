"""Plugins: entry points -> the :class:`~chatplug.plugins.registry.Registry` of providers,
routes and observers; what a plugin must look like (``contract``), which may load
(``controls``), a provider's parameters (``params``) and why one is missing (``missing``)."""

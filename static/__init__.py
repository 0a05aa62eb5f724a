"""The files the collector serves, installed as the package ``sightline_static``.

This folder stays at the top of the repository (``npm run build`` writes
``sightline.min.js`` here); ``setup.py`` maps it to that package and pyproject.toml's
package data ships its ``*.js`` and ``*.html``. Read them with
``collector.assets.static_file``, which works in an editable install and in a wheel.
This file makes it a regular package: ``importlib.resources`` cannot read a namespace
package of an editable install on Python 3.11.
"""

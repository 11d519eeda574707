"""midseg.gui: the PyQt5 application, a thin client of `midseg.Session`.

Importing this package imports nothing from Qt; `midseg.gui.app.main` does.
Views, tools and workers live in `window`, `views`, `jobs`; pure geometry in `planes`.
"""

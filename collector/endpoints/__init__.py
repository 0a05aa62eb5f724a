"""One module per wire format: its routes, declared once (see ``collector.routing``).

An endpoint only reads the body, lets the dialect validate it, authorises the key
and accepts; vendor endpoints that read or configure call named store functions.
"""

"""Frames in and out: sources (files, images, cameras, streams), sinks (files, images,
windows, the MJPEG server) and the destination files are written through.

``base`` says what the runner needs of each (Protocols); nothing here imports the engine.
"""

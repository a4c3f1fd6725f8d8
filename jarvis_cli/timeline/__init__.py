"""The timeline: a self-contained HTML page of a log's sessions and streams.

`record.Recorder` collects what to draw while `diagnose` scans (lanes, bars, markers,
loop spans, flush density, bounded whatever the log's size); `html.write` renders it
with the diagnosis's findings into one file that opens offline. `diagnose --html`,
`verify-hang --html` and `swarm`'s report folder all write it with `html.write`.
"""

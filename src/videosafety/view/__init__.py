"""`videosafety view`: a local page for reading a run's samples, failures first.

    index.py   one pass over a run (responses + verdicts, through evaluate.rundir) into
               RUN/view/: a columnar index.js for listing and filtering, detail shards for
               one sample's texts, rebuilt when the run's files change
    frames.py  thumbnails of the frames the model was given (the run's budget), decoded once
               and cached in RUN/view/frames/
    server.py  a stdlib HTTP server on 127.0.0.1 that serves the page and RUN/view/ only
    export.py  the same page as static files that open from disk (file://)

The data files are JavaScript (``VS.got(document.currentScript.src, {...})``) loaded with
<script> tags, not fetch(): Chromium refuses fetch() from file://, and one format serves both
the server and the export. Filtering happens in the page over the index's integer columns;
texts load a shard at a time, only for the sample opened.
"""

from videosafety.view.index import ViewIndex, build_index
from videosafety.view.export import export_view
from videosafety.view.server import ViewServer

__all__ = ["ViewIndex", "ViewServer", "build_index", "export_view"]

"""Video files through an :class:`~bsrn_edge.runtime.Upscaler` (``bsrn-upscale -i clip.mp4``; extra ``video``).

One module per job: :mod:`.options` (what to run and what a run wrote), :mod:`.probe` (opening a file,
checking encoder settings), :mod:`.decode` (demux, colour, the frame and audio windows, damage),
:mod:`.encode`, :mod:`.pipeline` (the three threads) and :mod:`.segments` (one long video as several
tasks, joined by remuxing). PyAV is imported on first use.
"""

from .options import DEFAULT_PIX_FMT, VIDEO_EXTENSIONS, Span, VideoInfo, VideoOptions, VideoReport, parse_frames
from .pipeline import upscale_video
from .probe import default_codec, encoder_settings, looks_like_video, output_for, probe_video
from .segments import join_segments, plan_segments, segment_path, segment_spans, upscale_segment

__all__ = ["VIDEO_EXTENSIONS", "DEFAULT_PIX_FMT", "VideoOptions", "VideoInfo", "VideoReport", "parse_frames",
           "probe_video", "looks_like_video", "output_for", "default_codec", "encoder_settings", "upscale_video", "Span",
           "segment_spans", "plan_segments", "segment_path", "upscale_segment", "join_segments"]

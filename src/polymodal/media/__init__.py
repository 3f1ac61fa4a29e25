"""The media room: decoding user-supplied media into what the models take.

`load_image` turns a path, encoded bytes, a file object, a PIL image or a numpy array into a fully
loaded RGB PIL image, refusing bad input with `polymodal.errors.MediaError`.
"""

from polymodal.media.image import DEFAULT_MAX_PIXELS, describe_source, load_image, probe_image

__all__ = ["DEFAULT_MAX_PIXELS", "describe_source", "load_image", "probe_image"]

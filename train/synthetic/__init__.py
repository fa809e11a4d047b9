"""Synthetic road scenes in the official Cityscapes layout: the project's embedded default dataset.

``write_dataset`` renders procedural road scenes and lays them out exactly like Cityscapes, so the
demo and the tests need no download (``roadseg synth --out DIR --num N --size H W --seed S``):

    DIR/leftImg8bit/{train,val}/synth/synth_{idx:06d}_000019_leftImg8bit.png   (8-bit RGB)
    DIR/gtFine/{train,val}/synth/synth_{idx:06d}_000019_gtFine_labelIds.png     (8-bit Cityscapes label ids)

Label ids come by name from ``cityscapesscripts``. Scenes vary in horizon height, road curvature, width,
markings, roadside layout, buildings, vegetation, poles, cars and lighting so that a model has to learn
more than "the bottom half is road"; a few classes that Cityscapes ignores in evaluation (ego vehicle,
parking, static, ground) appear on many frames so that downstream ignore handling is exercised.
Each frame's random stream is derived from ``(seed, split, index)`` only, so a frame is byte-identical
whatever the number of frames written.

``write_drive`` (``roadseg synth --drive``) renders one such world from a camera moving forward along
the road and writes ``DIR/drive.mp4`` plus its frames with labels as one Cityscapes sequence, split
``val``, city ``drive`` (``drive_frame_paths``), so that ``find_samples("cityscapes", DIR, "val")``
lists them in video order.

Modules, in drawing order: ``camera`` (projection geometry), ``canvas`` (label ids, the image pair
shapes are drawn into), ``scene`` (random road, sides, camera, traffic, props), ``ground`` (roadside
bands, road, markings), ``backdrop`` (sky, skyline, facades, tree lines), ``things`` (cars, trees,
poles, boxes), ``effects`` (shadows, texture, camera response), ``render`` (a whole frame, seeding),
``writers`` (files on disk) and ``cli`` (``roadseg synth``).
"""

from roadseg.train.synthetic.render import render_drive, render_frame, render_scene
from roadseg.train.synthetic.writers import drive_frame_paths, frame_paths, write_dataset, write_drive

__all__ = ["drive_frame_paths", "frame_paths", "render_drive", "render_frame", "render_scene", "write_dataset",
           "write_drive"]

"""The method at scoring time: settings, pathways, encoders, views, the extractor and the zero-shot rules.

- settings.py, profiles.py: what a run computes (`EncoderSpec`, `ViewConfig`, `spec_for`);
- pathway.py, registry.py, ll_pathway.py, hl_pathway.py: the pathway contract, the registry and the two pathways;
- ll_encoder.py, hl_encoder.py, weights.py, shipped.py: the encoders and where their weights come from;
- views.py, cut.py, device_decode.py, devices.py: decoded images to model inputs, on the CPU or the device;
- extractor.py: every selected pathway on one device, views in, feature rows out;
- zero_shot.py, pristine.py, anchors.py: the zero-shot scores, the pristine model, the 0-100 scale;
- npz.py, configs/, assets/: tagged .npz files, LL architectures as data, the shipped models.

Building these assets (training, pristine patch selection, the scale's anchors) is grepq_core/training.
"""

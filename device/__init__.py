"""The Raspberry Pi runtime: camera, button, onnxruntime inference, actions and the daemon.

Runs on onnxruntime + numpy + Pillow only: nothing here (or anything it imports) may import torch.
"""

"""octopus: an on-device vision–language agent that answers a request with one functional token.

This top-level package (the `core/` folder) holds only the torch-free contract that every part shares:
the function registry
(`octopus.functions`), the call grammar (`octopus.calls`), the prompt (`octopus.prompt`), image
preprocessing (`octopus.preprocess`) and the command line (`octopus.cli`). The heavy parts live in the
sub-packages mapped from the repository folders: `octopus.model`, `octopus.training`, `octopus.exporters`
(torch) and `octopus.device` (onnxruntime only).
"""

__version__ = "0.1.0"

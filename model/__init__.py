"""The vision–language agent in torch: config tree, image encoder, projector, LM loading, token table.

`octopus.model.agent.OctopusAgent` composes them; `octopus.model.presets` names ready-made configs.
"""

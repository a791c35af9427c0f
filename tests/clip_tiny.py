"""A tiny open_clip model with random weights, saved as a user would pass it to --naming-model
(a model config .json) and --naming-weights (safetensors or an open_clip checkpoint)."""
import json
import logging
import os

import open_clip
import torch
from safetensors.torch import save_file

TINY_CONFIG = {'embed_dim': 16,
               'vision_cfg': {'image_size': 32, 'layers': 1, 'width': 32, 'patch_size': 8,
                              'head_width': 16},
               'text_cfg': {'context_length': 77, 'vocab_size': 49408, 'width': 32, 'heads': 2,
                            'layers': 1}}


def write_tiny_clip(folder, seed=0):
    """(config path, safetensors path, open_clip checkpoint path, state dict)."""
    os.makedirs(folder, exist_ok=True)
    config = os.path.join(folder, 'tiny-clip.json')
    with open(config, 'w') as f:
        json.dump({'model_cfg': TINY_CONFIG}, f)  # as an open_clip_config.json holds it
    open_clip.factory._MODEL_CONFIGS['tiny-clip-test'] = TINY_CONFIG
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model('tiny-clip-test', pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors = os.path.join(folder, 'tiny.safetensors')
    save_file(state, safetensors)
    checkpoint = os.path.join(folder, 'tiny.pt')
    torch.save({'epoch': 1, 'state_dict': state}, checkpoint)  # what open_clip training saves
    return config, safetensors, checkpoint, state

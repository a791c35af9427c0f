"""Pretrained backbones from timm (`backbone: timm/<model name>`): DINO, DINOv2, CLIP image
towers, ResNets, ... used as frozen feature extractors.

timm creates the model (num_classes=0: the pooled features, no classifier) and knows its
pretrained weights (Hugging Face hub repo and file) and its preprocessing. The weights come
from the hub (`pretrained_weights: hub`, cached by huggingface_hub) or from a local
.safetensors / torch file, and are always loaded strictly: a file that does not fit the model
stops the run with the list of keys.
"""
import os
import socket
import threading
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch
from timm.models import get_pretrained_cfg, load_state_dict

from utils.checkpoint import WeightsMismatch, check_finite_weights, load_state_dict_strict
from utils.config import timm_model_name
from utils.errors import UserError

HUB_FILENAME = 'model.safetensors'  # what timm's hub repos hold (timm tries it first too)
HUB_CONNECT_TIMEOUT_S = 3


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights that cannot be had here (no network); the message says what to do."""


def timm_backbone(backbone):
    """{'backbone': timm model with random weights giving pooled features, 'dim': their size}.

    Models with a fixed input size (ViTs) are built with dynamic_img_size, so the crop size is a
    preprocessing choice (a 224 crop for a DINOv2 pretrained at 518) and the weights file of the
    pretrained model fits whatever the crop."""
    net = create_features_model(timm_model_name(backbone))
    return {'backbone': net, 'dim': net.num_features}


def create_features_model(name, **kwargs):
    """timm.create_model for pooled features (num_classes=0), any input size where it can."""
    pretrained_cfg = get_pretrained_cfg(name)
    if pretrained_cfg and pretrained_cfg.fixed_input_size:
        try:
            return timm.create_model(name, num_classes=0, dynamic_img_size=True, **kwargs)
        except TypeError:  # a fixed-size model without dynamic_img_size: crop to its own size
            pass
    return timm.create_model(name, num_classes=0, **kwargs)


def weights_file_state(path, net):
    """The state dict of a weights file as timm would read it (safetensors or torch; inside
    'state_dict', 'model' or an EMA copy; 'module.' removed), with our own 'backbone.' prefix
    (a pretext model.pth.tar) removed and the classifier dropped (num_classes=0 has none)."""
    try:
        state = load_state_dict(path)  # timm: weights_only torch.load, or safetensors
    except Exception as error:  # torch and safetensors raise many kinds on a bad file
        raise WeightsUnavailable(f"cannot read the weights file {path}: {error} (a "
                                 f".safetensors or torch file of the model is expected)") from error
    if state and all(k.startswith('backbone.') for k in state):
        state = {k.removeprefix('backbone.'): v for k, v in state.items()}
    classifiers = net.pretrained_cfg.get('classifier') or ()
    for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state = {k: v for k, v in state.items() if not k.startswith(name + '.')}
    return state


def load_weights_file(net, path, name):
    """Load a weights file into a timm model strictly. A file in this model's own key names
    loads as is; anything else goes through timm's conversion for the model (original DINOv2
    or DINO releases, position embeddings of another size), then must fit exactly."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights not found: {path} (set pretrained_weights "
                                f"to 'hub' or to the file, e.g. --opts pretrained_weights=PATH)")
    state = weights_file_state(path, net)
    tensors = sum(torch.is_tensor(v) for v in state.values()) if isinstance(state, dict) else 0
    if not tensors:  # timm's conversion would take an empty state dict for none: the hub
        raise WeightsUnavailable(f"the weights file {path} holds no tensors: it is not weights "
                                 f"of {name} (the file given is the only source of weights)")
    try:
        load_state_dict_strict(net, state, f"{path} (timm model {name})")
        return
    except WeightsMismatch as direct:
        mismatch = direct
    try:  # timm applies the model's own checkpoint filter when it loads "pretrained" weights
        converted = create_features_model(name, pretrained=True, pretrained_cfg_overlay={
            'state_dict': state, 'num_classes': 0})
    except (RuntimeError, KeyError, ValueError):  # no fit either way: list the file's keys
        raise mismatch from None
    check_finite_weights(converted.state_dict(), path)
    net.load_state_dict(converted.state_dict())


def hub_reachable(timeout=HUB_CONNECT_TIMEOUT_S):
    """Whether the Hugging Face endpoint answers a TCP connect within `timeout` seconds (the
    DNS lookup included: it runs in a daemon thread, so a dead resolver cannot hang the run)."""
    if huggingface_hub.constants.HF_HUB_OFFLINE or os.environ.get('HF_HUB_OFFLINE') == '1':
        return False
    host = urlparse(huggingface_hub.constants.ENDPOINT).hostname
    result = []

    def connect():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def offline_message(backbone, repo, filename):
    url = huggingface_hub.hf_hub_url(repo, filename)
    return (f"cannot download the pretrained weights of {backbone}: "
            f"{urlparse(url).hostname} is not reachable from this machine (or HF_HUB_OFFLINE is "
            f"set). On a machine with internet, fetch the file {filename} of the Hugging Face "
            f"repository {repo}:\n"
            f"  {url}\n"
            f"  (or: huggingface-cli download {repo} {filename} --local-dir weights/)\n"
            f"copy it to this machine and point step 1 at it:\n"
            f"  --opts pretrained_weights=/path/to/{filename}\n"
            f"(or set pretrained_weights: /path/to/{filename} in the config).")


def hub_weights_file(backbone, name, pretrained_cfg):
    """A local copy of the model's weights from the Hugging Face hub: huggingface_hub's cache,
    else a download; offline, a WeightsUnavailable error at once (no network timeouts)."""
    repo = pretrained_cfg.get('hf_hub_id')
    if not repo:
        raise WeightsUnavailable(f"{backbone}: timm knows no Hugging Face repository for its "
                                 f"weights ({pretrained_cfg.get('url') or 'no URL either'}); "
                                 f"download them and set pretrained_weights to the file")
    filename = pretrained_cfg.get('hf_hub_filename') or HUB_FILENAME
    cached = huggingface_hub.try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    if not hub_reachable():
        raise WeightsUnavailable(offline_message(backbone, repo, filename))
    try:
        return huggingface_hub.hf_hub_download(repo, filename)
    except huggingface_hub.errors.EntryNotFoundError:  # older repositories: a torch file only
        return huggingface_hub.hf_hub_download(repo, 'pytorch_model.bin')


def pretrained_timm_backbone(backbone, weights):
    """timm_backbone() with its pretrained weights: `weights` is 'hub' or a file path."""
    built = timm_backbone(backbone)
    net, name = built['backbone'], timm_model_name(backbone)
    path = hub_weights_file(backbone, name, net.pretrained_cfg) if weights == 'hub' else weights
    load_weights_file(net, path, name)
    return built

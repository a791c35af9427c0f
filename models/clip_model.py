"""A CLIP model (both towers and the tokenizer) from open_clip, for naming clusters.

The model is an open_clip name (`ViT-B-32`, or `ViT-B-32:laion2b_s34b_b79k` for one of its
pretrained tags; openai where the model has it, else its first tag), or the path of an open_clip
model config (.json: the `model_cfg` of an open_clip_config.json, or that whole file). Weights
come as the timm backbones' do: `hub` (huggingface_hub's cache, else a download; offline, a
message at once) or a local file, open_clip's checkpoint or safetensors, read weights-only and
loaded strictly (a mismatch lists the keys).
"""
import json
import logging
import os
from dataclasses import dataclass

import huggingface_hub
import open_clip
import torch

from models.timm_backbone import WeightsUnavailable, hub_reachable
from utils.checkpoint import WeightsMismatch
from utils.errors import UserError

PREFERRED_TAG = 'openai'
HUB_FILES = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')  # as open_clip looks


class NamingModelError(UserError, ValueError):
    """A --naming-model or --naming-weights that cannot be used; the message says why."""


@dataclass
class ClipModel:
    model: torch.nn.Module   # open_clip CLIP, eval mode
    preprocess: object       # PIL image -> tensor, the model's validation transform
    tokenizer: object        # list of str -> token tensor
    name: str                # as the user gave it
    weights: str             # the file the weights came from

    @property
    def image_size(self):
        size = self.model.visual.image_size
        return max(size) if isinstance(size, (tuple, list)) else int(size)


def parse_model(name):
    """(open_clip model name or None, pretrained tag or None, config dict or None) of a
    --naming-model value; raises NamingModelError for a name open_clip does not know."""
    if name.endswith('.json'):
        return None, None, read_model_config(name)
    model, _, tag = name.partition(':')
    if model not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if m.lower().startswith(model[:5].lower())]
        raise NamingModelError(f"--naming-model {name}: open_clip has no model {model!r} "
                               f"(e.g. {', '.join(close[:8]) or 'ViT-B-32, ViT-L-14'}; or the "
                               f"path of an open_clip model config .json)")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if tag and tag not in tags:
        raise NamingModelError(f"--naming-model {name}: {model} has no pretrained tag {tag!r} "
                               f"(its tags: {', '.join(tags) or 'none'})")
    if not tag and tags:
        tag = PREFERRED_TAG if PREFERRED_TAG in tags else tags[0]
    return model, tag or None, None


def read_model_config(path):
    if not os.path.isfile(path):
        raise NamingModelError(f"--naming-model: model config not found: {path}")
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NamingModelError(f"--naming-model {path}: not an open_clip model config "
                               f"(JSON): {error}") from error
    whole = config if isinstance(config, dict) and 'model_cfg' in config else {'model_cfg': config}
    model_cfg = whole['model_cfg']
    needed = {'embed_dim', 'vision_cfg', 'text_cfg'}
    if not isinstance(model_cfg, dict) or not needed <= set(model_cfg):
        raise NamingModelError(f"--naming-model {path}: an open_clip model config needs "
                               f"embed_dim, vision_cfg and text_cfg")
    preprocess = whole.get('preprocess_cfg')
    return {'model_cfg': model_cfg, 'preprocess_cfg': preprocess if isinstance(preprocess, dict)
            else {}}


def weights_path(name, weights='hub'):
    """The weights file of --naming-model NAME --naming-weights WEIGHTS, checked before any
    model is built: a local file, or the hub's (cached, else downloaded; offline, a message at
    once naming the repository, file, URL and the flag)."""
    _, tag, config = parse_model(name)
    if weights not in (None, 'hub'):
        if not os.path.isfile(weights):
            raise NamingModelError(f"--naming-weights: file not found: {weights}")
        return weights
    if config is not None:
        raise NamingModelError(f"--naming-model {name} is a model config: give its weights "
                               f"file with --naming-weights PATH")
    if tag is None:
        raise NamingModelError(f"--naming-model {name}: open_clip knows no pretrained weights "
                               f"for it: give a file with --naming-weights PATH")
    return hub_file(name, open_clip.get_pretrained_cfg(name.partition(':')[0], tag))


def build_model(name):
    """(random-weights open_clip model, validation transform, tokenizer, pretrained cfg)."""
    model_name, tag, config = parse_model(name)
    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    if config is not None:  # registered under a name of its own, as add_model_config does
        model_name = 'naming-' + os.path.splitext(os.path.basename(name))[0]
        open_clip.factory._MODEL_CONFIGS[model_name] = config['model_cfg']
        pretrained_cfg = config['preprocess_cfg']
    preprocess = {f'image_{k}': pretrained_cfg[k] for k in
                  ('mean', 'std', 'interpolation', 'resize_mode') if k in pretrained_cfg}
    logging.disable(logging.WARNING)  # open_clip warns that no weights are loaded: ours follow
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=None, pretrained_text=False,
            force_quick_gelu=bool(pretrained_cfg.get('quick_gelu')), **preprocess)
    finally:
        logging.disable(logging.NOTSET)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name), pretrained_cfg


def offline_message(name, repo, filename):
    url = huggingface_hub.hf_hub_url(repo, filename)
    return (f"cannot download the weights of --naming-model {name}: the Hugging Face hub is not "
            f"reachable from this machine (or HF_HUB_OFFLINE is set). On a machine with "
            f"internet, fetch the file {filename} of the repository {repo}:\n  {url}\n"
            f"  (or: huggingface-cli download {repo} {filename} --local-dir weights/)\n"
            f"copy it here and pass it with --naming-weights /path/to/{filename}")


def hub_file(name, pretrained_cfg):
    """The weights file of an open_clip pretrained tag from huggingface_hub's cache, else
    downloaded; offline, WeightsUnavailable at once."""
    hub = (pretrained_cfg.get('hf_hub') or '').split('/')
    if len(hub) < 2:
        raise WeightsUnavailable(f"--naming-model {name}: its weights are not on the Hugging "
                                 f"Face hub ({pretrained_cfg.get('url') or 'no URL'}): download "
                                 f"them and pass the file with --naming-weights PATH")
    repo = '/'.join(hub[:2])
    names = [hub[2]] if len(hub) > 2 and hub[2] else list(HUB_FILES)
    for filename in names:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return cached
    if not hub_reachable():
        raise WeightsUnavailable(offline_message(name, repo, names[0]))
    for filename in names:
        try:
            return huggingface_hub.hf_hub_download(repo, filename)
        except huggingface_hub.errors.EntryNotFoundError:
            continue
        except (OSError, huggingface_hub.errors.HfHubHTTPError) as error:  # network, disk
            raise WeightsUnavailable(f"{offline_message(name, repo, filename)}\n(the download "
                                     f"failed: {error})") from error
    raise WeightsUnavailable(f"--naming-model {name}: none of {', '.join(names)} is in the "
                             f"repository {repo}: pass a weights file with --naming-weights")


def load_weights(model, path):
    """open_clip's checkpoint conversions, weights-only, then every key must fit."""
    try:
        incompatible = open_clip.load_checkpoint(model, path, strict=False, weights_only=True)
    except RuntimeError as error:  # shapes that do not fit: torch lists them
        if 'size mismatch' in str(error):
            raise WeightsMismatch(f"weights in {path} do not match the model: {error}") from None
        raise NamingModelError(f"cannot read the weights file {path}: {error}") from error
    except Exception as error:  # pickles with code, truncated files, not a weights file
        raise NamingModelError(f"cannot read the weights file {path}: {type(error).__name__}: "
                               f"{error} (an open_clip checkpoint or .safetensors file is "
                               f"expected)") from error
    missing, unexpected = incompatible.missing_keys, incompatible.unexpected_keys
    if missing or unexpected:
        lines = [f"weights in {path} do not match the model:"]
        for title, keys in (('missing keys', missing), ('unexpected keys', unexpected)):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > 20 else ''
                lines.append(f"  {title} ({len(keys)}): {', '.join(sorted(keys)[:20])}{more}")
        raise WeightsMismatch('\n'.join(lines))


def load_clip_model(name, path, device='cpu'):
    """A ClipModel with the weights of `path` (weights_path gives it)."""
    model, preprocess, tokenizer, _ = build_model(name)
    load_weights(model, path)
    return ClipModel(model.to(device), preprocess, tokenizer, name, path)

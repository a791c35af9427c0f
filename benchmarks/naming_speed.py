"""How long naming clusters costs (eval.py --naming-model): text embedding of the default
vocabulary (uncached, then cached), and the cost per image, with random weights of a real
open_clip architecture (the speed is the real model's; no download).

    OMP_NUM_THREADS=2 python benchmarks/naming_speed.py --model ViT-B-32 --names 512 --images 64

The uncached vocabulary time is measured on --names names and scaled to the whole default
vocabulary (the cost is linear in names x templates); the cached time is measured in full.
Prints figures, asserts nothing.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from annotation import naming  # noqa: E402
from models.clip_model import ClipModel, build_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='ViT-B-32')
    parser.add_argument('--names', type=int, default=512, help='names embedded to time it')
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{args.model} with random weights on {device} ({torch.get_num_threads()} threads)")
    model, preprocess, tokenizer, _ = build_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, 'weights.safetensors')
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
        clip = ClipModel(model.to(device), preprocess, tokenizer, args.model, weights)
        vocabulary = naming.default_vocabulary()
        sample = vocabulary.names[:args.names]
        start = time.perf_counter()
        naming.embed_vocabulary(clip, sample, naming.CPU_TEMPLATES, device)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        per_prompt = (time.perf_counter() - start) / len(sample)
        for templates in (naming.CPU_TEMPLATES, naming.TEMPLATES):
            total = per_prompt * len(vocabulary) * len(templates)
            print(f"vocabulary uncached, {len(templates)} template(s): {1 / per_prompt:.1f} "
                  f"prompts/s -> {len(vocabulary):,} names: {total:.0f} s ({total / 60:.1f} min)")
        with torch.inference_mode():
            tokens = tokenizer([f"a photo of a {n}." for n in sample[:64]]).to(device)
            start = time.perf_counter()
            model.encode_text(tokens)
            full = time.perf_counter() - start
            start = time.perf_counter()
            naming.encode_text(model, tokens)
            trimmed = time.perf_counter() - start
        print(f"64 prompts: open_clip's encode_text {full:.2f} s, trimmed to the longest prompt "
              f"{trimmed:.2f} s ({full / trimmed:.1f}x)")
        key = naming.cache_key(clip, naming.file_digest(weights), naming.CPU_TEMPLATES,
                               vocabulary)
        cache = os.path.join(folder, 'cache')
        os.makedirs(cache)
        embeddings = np.zeros((len(vocabulary), model.text_projection.shape[1]), np.float32)
        np.savez(os.path.join(cache, f"text-{key[:32]}.npz"), key=np.array(key),
                 embeddings=embeddings)
        start = time.perf_counter()
        naming.cached_text_embeddings(clip, vocabulary, naming.CPU_TEMPLATES, cache, device)
        print(f"vocabulary cached (hash of the {os.path.getsize(weights) / 2 ** 20:.0f} MiB "
              f"weights + read): {time.perf_counter() - start:.1f} s")
        rng = np.random.default_rng(0)
        pictures = [Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
                    for _ in range(args.images)]
        naming.embed_images(clip, lambda i, side: pictures[i], np.arange(2), device)  # warm up
        start = time.perf_counter()
        naming.embed_images(clip, lambda i, side: pictures[i], np.arange(args.images), device)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        per_image = (time.perf_counter() - start) / args.images
        print(f"images: {per_image * 1000:.0f} ms each (transform + image tower); a 10,000-image "
              f"export of 10 clusters embeds {10 * naming.IMAGES_PER_CLUSTER} images: "
              f"{10 * naming.IMAGES_PER_CLUSTER * per_image:.0f} s (all 10,000: "
              f"{10000 * per_image / 60:.1f} min)")


if __name__ == '__main__':
    main()

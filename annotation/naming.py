"""Cluster names suggested by a CLIP model: each cluster's images against a noun vocabulary.

Per cluster, its most confident images are embedded with the image tower, L2-normalised and
averaged (then normalised again); every vocabulary entry is embedded with the text tower through
a few prompt templates, normalised, averaged over the templates (CLIP's prompt ensembling) and
normalised. Scores are the softmax over the vocabulary of CLIP's logits (logit scale x cosine);
each cluster keeps its top 3. The name in use is chosen by Hungarian matching on the cluster x
name logits, so that no two clusters get the same name.

The text embeddings of a vocabulary are cached on disk, keyed by model, weights (SHA-256),
templates and vocabulary content: a changed key embeds again, a damaged cache file is rebuilt.

torch, timm, open_clip and scipy are imported where they are used: an export that names no
clusters (a re-export from saved predictions, eval.py) loads none of them.
"""
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from annotation.names import AnnotationError
from utils.checkpoint import atomic_write
from utils.paths import file_digest
from utils.progress import progress
from utils.text import visible_text

# CLIP's ImageNet prompt ensemble, reduced to a few (the paper's 80 cost 80 text passes each).
TEMPLATES = ('a photo of a {}.', 'a bad photo of a {}.', 'a photo of the large {}.',
             'a photo of the small {}.', 'a low resolution photo of a {}.', 'art of the {}.',
             'a close-up photo of a {}.')
# On a CPU one template: the default vocabulary at 7 costs 7 times as long (docs/naming.md).
CPU_TEMPLATES = TEMPLATES[:1]
TOP = 3
IMAGES_PER_CLUSTER = 50  # the most confident ones; 0 for all (costs scale with the images)
MAX_VOCABULARY_BYTES = 64 * 2 ** 20
PROMPT_CHARS = 4096  # a name is cut here before tokenising: the tokenizer keeps 77 tokens anyway
TEXT_BATCH, IMAGE_BATCH = 256, 32
CACHE_VERSION = 1


@dataclass
class Vocabulary:
    names: list                                  # distinct, in file order
    source: str                                  # the file, or a description
    synonyms: list = field(default_factory=list)  # per name, its synset's lemmas (default only)

    def __len__(self):
        return len(self.names)

    def digest(self):
        h = hashlib.sha256()
        for name in self.names:
            h.update(name.encode('utf-8', 'surrogatepass') + b'\0')
        return h.hexdigest()


def default_vocabulary():
    """The ImageNet-21k classes timm ships (imagenet_synset_to_lemma.txt), named by each
    synset's first lemma; a lemma that names several synsets is kept once, with the synonyms
    of all of them."""
    import timm

    lemmas_file = os.path.join(os.path.dirname(timm.__file__), 'data', '_info',
                               'imagenet_synset_to_lemma.txt')
    names, synonyms, index = [], [], {}
    with open(lemmas_file, encoding='utf-8') as f:
        for line in f:
            _, _, lemmas = line.rstrip('\n').partition('\t')
            lemmas = [lemma.strip() for lemma in lemmas.split(',') if lemma.strip()]
            if not lemmas:
                continue
            if lemmas[0] in index:
                synonyms[index[lemmas[0]]].extend(lemmas[1:])
                continue
            index[lemmas[0]] = len(names)
            names.append(lemmas[0])
            synonyms.append(lemmas)
    return Vocabulary(names, f"ImageNet-21k lemmas (timm {timm.__version__})", synonyms)


def unique_entries(lines):
    """Non-blank entries, stripped of surrounding spaces, first occurrence kept."""
    seen, names = set(), []
    for line in lines:
        name = line.strip(' \t\r\ufeff')
        if name.strip() and name not in seen:
            seen.add(name)
            names.append(name)
    return names


def read_vocabulary(path):
    """A user's vocabulary: UTF-8 text, one name a line (only '\\n' ends a line: other line
    separators stay inside the name); blank lines and duplicates ignored."""
    if not os.path.isfile(path):
        raise AnnotationError(f"vocabulary file not found: {path}")
    size = os.path.getsize(path)
    if size > MAX_VOCABULARY_BYTES:
        raise AnnotationError(f"{path}: the vocabulary file is {size / 2 ** 20:.1f} MiB, over "
                              f"the limit of {MAX_VOCABULARY_BYTES // 2 ** 20} MiB")
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a text file (byte {data[e.start]:#04x} at offset "
                              f"{e.start} is not UTF-8): a vocabulary is UTF-8 text, one name "
                              f"a line") from e
    if '\0' in text:
        raise AnnotationError(f"{path}: not a text file (it holds NUL bytes): a vocabulary is "
                              f"UTF-8 text, one name a line")
    names = unique_entries(text.split('\n'))
    if not names:
        raise AnnotationError(f"{path}: the vocabulary file holds no name (one name a line)")
    return Vocabulary(names, path)


# ---------------------------------------------------------------------------- ranking

def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ensemble(per_template):
    """Template x name x dim normalised text embeddings -> name x dim: the normalised mean."""
    return normalize(normalize(np.asarray(per_template, dtype=np.float32)).mean(axis=0))


def cluster_embedding(image_embeddings):
    """The normalised mean of a cluster's normalised image embeddings."""
    return normalize(normalize(np.asarray(image_embeddings, dtype=np.float32)).mean(axis=0))


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def unique_assignment(logits):
    """Per row (cluster) a distinct column (name) maximising the summed logits. Only each row's
    top-R columns (R = rows) can be in an optimal assignment (a row given a lower one has a free
    better one to swap to), so the matching runs on their union, not the whole vocabulary."""
    from scipy.optimize import linear_sum_assignment

    rows = logits.shape[0]
    candidates = np.unique(np.argsort(-logits, axis=1, kind='stable')[:, :rows])
    chosen_rows, chosen = linear_sum_assignment(logits[:, candidates], maximize=True)
    assignment = np.empty(rows, dtype=int)
    assignment[chosen_rows] = candidates[chosen]
    return assignment


@dataclass
class Suggestions:
    chosen: str       # the unique name (Hungarian)
    chosen_score: float
    ranked: list      # [(name, score)] the top 3, best first


def rank_names(cluster_embeddings, text_embeddings, names, logit_scale, top=TOP):
    """Per cluster (rows of cluster_embeddings, normalised), Suggestions over `names`."""
    logits = logit_scale * np.asarray(cluster_embeddings) @ np.asarray(text_embeddings).T
    probs = softmax(logits)
    best = np.argsort(-probs, axis=1, kind='stable')[:, :top]
    assignment = unique_assignment(logits)
    return [Suggestions(names[assignment[r]], float(probs[r, assignment[r]]),
                        [(names[j], float(probs[r, j])) for j in best[r]])
            for r in range(len(logits))]


# ---------------------------------------------------------------------------- embedding

def default_templates(device):
    import torch

    return TEMPLATES if torch.device(device).type == 'cuda' else CPU_TEMPLATES


def encode_text(model, tokens):
    """model.encode_text, normalised. For open_clip's CLIP (causal text attention, pooled at
    the end-of-text token) the padding after the longest prompt cannot change the result, so it
    is cut: about 7x fewer positions for short names (open_clip has no option for it)."""
    import torch

    text = getattr(model, 'transformer', None)
    causal = getattr(model, 'attn_mask', None) is not None
    if text is None or not causal or getattr(model, 'text_pool_type', None) != 'argmax':
        return torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    length = int((tokens != 0).sum(dim=1).max())
    tokens = tokens[:, :length]
    cast = text.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(text(x, attn_mask=model.attn_mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) \
        else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def embed_vocabulary(clip, names, templates, device):
    """Name x dim ensembled text embeddings (float32, numpy). Prompts are batched by token
    count, so that each batch is cut to its own longest prompt (encode_text)."""
    import torch

    per_template = []
    bar = progress(total=len(names) * len(templates), unit='prompt', desc='Vocabulary',
                   leave=False)
    with torch.inference_mode():
        for template in templates:
            tokens = clip.tokenizer([template.format(name[:PROMPT_CHARS]) for name in names])
            order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
            embedded = [None] * len(names)
            for start in range(0, len(names), TEXT_BATCH):
                batch = order[start:start + TEXT_BATCH]
                rows = encode_text(clip.model, tokens[batch].to(device)).float().cpu()
                for i, row in zip(batch.tolist(), rows):
                    embedded[i] = row
                bar.update(len(batch))
            per_template.append(torch.stack(embedded).numpy())
    bar.close()
    return ensemble(per_template)


def cache_key(clip, weights_hash, templates, vocabulary):
    parts = [f"v{CACHE_VERSION}", clip.name, weights_hash, *templates, vocabulary.digest()]
    return hashlib.sha256('\0'.join(parts).encode('utf-8')).hexdigest()


def cached_text_embeddings(clip, vocabulary, templates, cache_dir, device, report=print):
    """The vocabulary's text embeddings from cache_dir/text-<key>.npz, else embedded and saved
    there (a file this code names and owns; a damaged one is written again)."""
    key = cache_key(clip, file_digest(clip.weights), templates, vocabulary)
    path = os.path.join(cache_dir, f"text-{key[:32]}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached['key']) == key and cached['embeddings'].shape[0] == len(vocabulary):
                    return cached['embeddings']
        except Exception as error:  # numpy/zipfile raise many types on a damaged file
            report(f"text embedding cache {path} is damaged ({type(error).__name__}): "
                   f"embedding the vocabulary again")
    report(f"embedding {len(vocabulary):,} names x {len(templates)} "
           f"template{'s' if len(templates) != 1 else ''} with {clip.name} (cached after)")
    embeddings = embed_vocabulary(clip, vocabulary.names, templates, device)
    atomic_write(path, lambda f: np.savez(f, key=np.array(key), embeddings=embeddings),
                 suffix='.npz')
    return embeddings


def embed_images(clip, load, indices, device):
    """Image x dim normalised image embeddings of images load(i) for i in indices."""
    import torch

    side = 2 * clip.image_size  # decoded reduced; the transform resizes to the model's size
    rows = []
    with torch.inference_mode():
        for start in progress(range(0, len(indices), IMAGE_BATCH), unit='batch', desc='Naming',
                              leave=False):
            batch = torch.stack([clip.preprocess(load(int(i), side).convert('RGB'))
                                 for i in indices[start:start + IMAGE_BATCH]]).to(device)
            rows.append(torch.nn.functional.normalize(clip.model.encode_image(batch), dim=-1)
                        .float().cpu())
    return torch.cat(rows).numpy() if rows else np.zeros((0, 0), np.float32)


def name_clusters(clip, vocabulary, members, load, cache_dir, device, templates=None,
                  report=print, per_cluster=IMAGES_PER_CLUSTER):
    """{cluster: Suggestions} for the clusters of `members` ({cluster: image indices, most
    confident first}, non-empty), from the `per_cluster` most confident images of each (0: all);
    load(i, side) gives image i as a PIL image."""
    templates = tuple(templates or default_templates(device))
    if len(vocabulary) < len(members):
        raise AnnotationError(f"the vocabulary ({vocabulary.source}) has {len(vocabulary)} "
                              f"names for {len(members)} clusters: unique names need at least "
                              f"as many")
    text = cached_text_embeddings(clip, vocabulary, templates, cache_dir, device, report)
    clusters = sorted(members)
    chosen = [members[k][:per_cluster] if per_cluster else members[k] for k in clusters]
    flat = np.concatenate(chosen)
    images = embed_images(clip, load, flat, device)
    bounds = np.cumsum([0] + [len(c) for c in chosen])
    means = np.stack([cluster_embedding(images[a:b]) for a, b in zip(bounds, bounds[1:])])
    scale = float(clip.model.logit_scale.detach().exp())
    names = [visible_text(n) for n in vocabulary.names]
    return dict(zip(clusters, rank_names(means, text, names, scale)))


def suggestions_json(suggestions):
    """The JSON form of one cluster's Suggestions (summary.json, gallery-data.js)."""
    return [{'name': name, 'score': round(score, 4)} for name, score in suggestions.ranked]


# ---------------------------------------------------------------------------- the export

@dataclass
class NamingRequest:
    model: str             # --naming-model
    weights: str           # the weights file (resolved from --naming-weights)
    vocabulary: Vocabulary
    images_per_cluster: int = IMAGES_PER_CLUSTER  # --naming-images (0: all)


def naming_request(model, weights, vocabulary_file, images_per_cluster=IMAGES_PER_CLUSTER):
    """--naming-model, --naming-weights, --vocabulary and --naming-images, checked before any
    model runs."""
    from models.clip_model import weights_path  # open_clip is imported only when naming
    if images_per_cluster < 0:
        raise AnnotationError(f"--naming-images must be 0 (all) or more, got "
                              f"{images_per_cluster}")
    vocabulary = read_vocabulary(vocabulary_file) if vocabulary_file else default_vocabulary()
    return NamingRequest(model, weights_path(model, weights or 'hub'), vocabulary,
                         images_per_cluster)


def suggest_names(export, request, cache_dir, device, report=print):
    """Name the clusters shown by a prepared export (after its corrections and merges)."""
    from models.clip_model import load_clip_model
    members = export.naming_members()
    if not members:
        return
    clip = load_clip_model(request.model, request.weights, device)
    templates = default_templates(device)
    report(f"naming {len(members)} cluster{'s' if len(members) != 1 else ''} with "
           f"{request.model} against {len(request.vocabulary):,} names "
           f"({visible_text(request.vocabulary.source)})")
    suggestions = name_clusters(clip, request.vocabulary, members,
                                export.images.load_thumbnail, cache_dir, device, templates,
                                report, request.images_per_cluster)
    export.set_suggestions(suggestions, {
        'model': visible_text(request.model), 'weights': visible_text(request.weights),
        'vocabulary': visible_text(request.vocabulary.source),
        'vocabulary_size': len(request.vocabulary), 'templates': list(templates),
        'images_per_cluster': request.images_per_cluster or 'all'})

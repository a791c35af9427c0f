"""Build the ClusteringModel of steps 2 and 3 from the previous step's weights, strictly.

Every model file is read by models.original.read_model_file: this project's own files and the
original SCAN code's (the authors' released checkpoints) load the same way."""
from models import ClusteringModel, build_backbone
from models.original import NotAModelFile, read_model_file
from utils.checkpoint import load_state_dict_strict, require


def clustering_model_from_pretext(cfg):
    """Backbone from the pretext model; only its projection head may be left behind."""
    path = cfg.paths.pretext_model
    require(path, 'simclr.py')
    model = ClusteringModel(build_backbone(cfg.backbone), cfg.num_classes, cfg.num_heads)
    load_state_dict_strict(model, read_model_file(path).state, path,
                           allowed_missing=('cluster_head.',),
                           allowed_unexpected=('contrastive_head.',))
    return model


def clustering_model_from_scan(cfg):
    """One-head model from the best head of the SCAN model (its index is saved with it)."""
    path = cfg.paths.scan_model
    require(path, 'scan.py')
    saved = read_model_file(path)
    head = saved.head
    if cfg.num_classes == 'auto':  # the K that step 2 chose (utils/k_selection.py)
        cfg.num_classes = int(saved.state[f'cluster_head.{head}.weight'].shape[0])
    state = {k: v for k, v in saved.state.items() if not k.startswith('cluster_head.')}
    state.update({k.replace(f'cluster_head.{head}.', 'cluster_head.0.', 1): v
                  for k, v in saved.state.items() if k.startswith(f'cluster_head.{head}.')})
    model = ClusteringModel(build_backbone(cfg.backbone), cfg.num_classes, nheads=1)
    load_state_dict_strict(model, state, path)
    return model


def load_trained_clustering_model(path, backbone):
    """A ClusteringModel saved by scan.py or selflabel.py (or the original code) with the index
    of its best head; `backbone` names the network where the file does not (original files)."""
    saved = read_model_file(path)
    backbone = saved.config['backbone'] if saved.config else backbone
    heads = sorted({int(k.split('.')[1]) for k in saved.state if k.startswith('cluster_head.')
                    and k.split('.')[1].isascii() and k.split('.')[1].isdigit()})
    num_clusters = saved.state[f'cluster_head.{heads[0]}.weight'].shape[0]
    if not 0 <= saved.head < len(heads):
        raise NotAModelFile(f"{path} is damaged: its best head is {saved.head}, but it has "
                            f"{len(heads)} head(s); rerun the step that wrote it")
    model = ClusteringModel(build_backbone(backbone), num_clusters, nheads=len(heads))
    load_state_dict_strict(model, saved.state, path)
    return model, saved.head


def load_contrastive_weights(model, path):
    """Weights of a pretext model file (ours or the original's) into a ContrastiveModel."""
    load_state_dict_strict(model, read_model_file(path).state, path)
    return model

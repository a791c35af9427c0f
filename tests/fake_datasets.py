"""Tiny datasets written in their real on-disk formats, for the dataset tests.

Each benchmark generator writes the extracted folder and the .tar.gz archive torchvision
downloads into one folder, and returns a `Written` record: the arrays a loader must give back
and the md5s to patch into torchvision (its hard-coded ones are those of the real files).
"""
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from torchvision.datasets.utils import calculate_md5

CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                   'ship', 'truck']
CIFAR100_COARSE = ['aquatic_mammals', 'fish', 'flowers', 'food_containers',
                   'fruit_and_vegetables', 'household_electrical_devices', 'household_furniture',
                   'insects', 'large_carnivores', 'large_man-made_outdoor_things',
                   'large_natural_outdoor_scenes', 'large_omnivores_and_herbivores',
                   'medium_mammals', 'non-insect_invertebrates', 'people', 'reptiles',
                   'small_mammals', 'trees', 'vehicles_1', 'vehicles_2']
STL10_CLASSES = ['airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey', 'ship',
                 'truck']


@dataclass
class Written:
    folder: str        # holds the extracted base folder and the archive
    archive: str       # path of the .tar.gz
    archive_md5: str
    md5: dict          # file name inside the base folder -> md5
    images: dict       # split -> uint8 N x H x W x 3, as a loader must return them
    labels: dict       # split -> int64 targets (0-based; -1 unlabeled)
    classes: list
    extra: dict = field(default_factory=dict)


def random_images(rng, n, size):
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def cifar_rows(images):
    """CIFAR's layout: one row per image, the 1024 red values (row-major), then green, blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def make_archive(folder, base_folder, archive_name):
    archive = os.path.join(folder, archive_name)
    with tarfile.open(archive, 'w:gz', compresslevel=1) as tar:
        tar.add(os.path.join(folder, base_folder), arcname=base_folder)
    return archive


def finish(folder, base_folder, archive_name, **arrays):
    base = os.path.join(folder, base_folder)
    md5 = {name: calculate_md5(os.path.join(base, name)) for name in sorted(os.listdir(base))}
    archive = make_archive(folder, base_folder, archive_name)
    return Written(folder=str(folder), archive=archive, archive_md5=calculate_md5(archive),
                   md5=md5, **arrays)


def write_cifar10(folder, per_batch=20, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    base = os.path.join(folder, 'cifar-10-batches-py')
    os.makedirs(base)
    batches = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    images, labels = {}, {}
    for name in batches:
        n = n_test if name == 'test_batch' else per_batch
        images[name], labels[name] = random_images(rng, n, 32), rng.integers(0, 10, n)
        write_pickle(os.path.join(base, name),
                     {'batch_label': name, 'labels': labels[name].tolist(),
                      'data': cifar_rows(images[name]),
                      'filenames': [f'{name}_{i}.png' for i in range(n)]})
    write_pickle(os.path.join(base, 'batches.meta'),
                 {'num_cases_per_batch': per_batch, 'label_names': CIFAR10_CLASSES,
                  'num_vis': 3072})
    train = batches[:5]
    return finish(folder, 'cifar-10-batches-py', 'cifar-10-python.tar.gz',
                  images={'train': np.concatenate([images[b] for b in train]),
                          'test': images['test_batch']},
                  labels={'train': np.concatenate([labels[b] for b in train]),
                          'test': labels['test_batch']},
                  classes=CIFAR10_CLASSES)


def write_cifar100(folder, n_train=40, n_test=20, seed=1):
    rng = np.random.default_rng(seed)
    base = os.path.join(folder, 'cifar-100-python')
    os.makedirs(base)
    images, fine, coarse = {}, {}, {}
    for name, n in (('train', n_train), ('test', n_test)):
        images[name], fine[name] = random_images(rng, n, 32), rng.integers(0, 100, n)
        coarse[name] = (fine[name] * 7 + 3) % 20  # any mapping, as long as coarse != fine
        write_pickle(os.path.join(base, name),
                     {'filenames': [f'{name}_{i}.png' for i in range(n)], 'batch_label': name,
                      'fine_labels': fine[name].tolist(), 'coarse_labels': coarse[name].tolist(),
                      'data': cifar_rows(images[name])})
    write_pickle(os.path.join(base, 'meta'),
                 {'fine_label_names': [f'fine_{i}' for i in range(100)],
                  'coarse_label_names': CIFAR100_COARSE})
    return finish(folder, 'cifar-100-python', 'cifar-100-python.tar.gz', images=images,
                  labels=coarse, classes=CIFAR100_COARSE, extra={'fine': fine})


def stl_bytes(images):
    """STL's layout: per image and channel, the pixels column by column (column-major)."""
    return images.transpose(0, 3, 2, 1).tobytes()


def write_stl10(folder, n_train=10, n_test=6, n_unlabeled=4, seed=2):
    rng = np.random.default_rng(seed)
    base = os.path.join(folder, 'stl10_binary')
    os.makedirs(base)
    images = {split: random_images(rng, n, 96)
              for split, n in (('train', n_train), ('test', n_test), ('unlabeled', n_unlabeled))}
    labels = {split: rng.integers(0, 10, len(images[split])) for split in ('train', 'test')}
    for split, array in images.items():
        with open(os.path.join(base, f'{split}_X.bin'), 'wb') as f:
            f.write(stl_bytes(array))
    for split, targets in labels.items():
        with open(os.path.join(base, f'{split}_y.bin'), 'wb') as f:
            f.write((targets + 1).astype(np.uint8).tobytes())  # 1..10 on disk
    with open(os.path.join(base, 'class_names.txt'), 'w') as f:
        f.write('\n'.join(STL10_CLASSES) + '\n')
    with open(os.path.join(base, 'fold_indices.txt'), 'w') as f:
        f.write('\n'.join(' '.join(map(str, rng.permutation(n_train)[:3])) for _ in range(10)))
    labels['unlabeled'] = np.full(n_unlabeled, -1)
    return finish(folder, 'stl10_binary', 'stl10_binary.tar.gz', images=images, labels=labels,
                  classes=STL10_CLASSES)


def patch_checksums(monkeypatch, tv_class, written, url=None):
    """Point a torchvision dataset class at the generated files: their md5s, the archive's md5
    and (optionally) a URL to download the archive from."""
    def relist(files):
        return [[name, written.md5[name]] for name, _ in files]
    monkeypatch.setattr(tv_class, 'train_list', relist(tv_class.train_list))
    monkeypatch.setattr(tv_class, 'test_list', relist(tv_class.test_list))
    monkeypatch.setattr(tv_class, 'tgz_md5', written.archive_md5)
    if hasattr(tv_class, 'meta'):
        meta = dict(tv_class.meta, md5=written.md5[tv_class.meta['filename']])
        monkeypatch.setattr(tv_class, 'meta', meta)
    if url is not None:
        monkeypatch.setattr(tv_class, 'url', f"{url}/{tv_class.filename}")


def write_jpeg(path, size=8, color=(200, 30, 60)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (size, size), color).save(path, 'JPEG')


def write_imagenet(root, wnids, split='train', per_class=1):
    """root/<split>/<wnid>/<wnid>_<i>.JPEG, tiny solid-colour JPEGs."""
    for k, wnid in enumerate(wnids):
        for i in range(per_class):
            write_jpeg(os.path.join(root, split, wnid, f'{wnid}_{i}.JPEG'),
                       color=(k % 256, 100, 200))


def noise_jpeg_bytes(size=64, seed=3):
    """A JPEG large enough that cutting it in half leaves a truncated image."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(random_images(rng, 1, size)[0]).save(buffer, 'JPEG', quality=95)
    return buffer.getvalue()


def write_bad_files(folder):
    """A truncated JPEG, a text file named .jpg, an empty .png and a .txt: names -> reason hint."""
    os.makedirs(folder, exist_ok=True)
    contents = {'truncated.jpg': noise_jpeg_bytes()[:1500], 'text.jpg': b'not an image at all\n',
                'empty.png': b'', 'notes.txt': b'some notes\n'}
    for name, data in contents.items():
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)
    return {'truncated.jpg': 'truncated', 'text.jpg': 'not an image', 'empty.png': 'empty',
            'notes.txt': 'not an image'}


def mode_images():
    """(file name, image in one PIL mode, the RGB pixels it must convert to), one per mode;
    the format of each file is one that stores that mode as is."""
    def raw(mode, values, dtype):
        return Image.frombytes(mode, (len(values), 1), np.asarray(values, dtype=dtype).tobytes())

    def palette(transparent):
        image = Image.new('P', (2, 1))
        image.putpalette([255, 0, 0, 0, 0, 255])
        image.putdata([0, 1])
        if transparent:
            image.info['transparency'] = 0
        return image

    def pixels(mode, values):
        image = Image.new(mode, (len(values), 1))
        image.putdata(values)
        return image

    white, grey16 = (255, 255, 255), [0, 32896, 65535]
    grey16_rgb = [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    return [
        ('mode_1.png', pixels('1', [0, 1]), [(0, 0, 0), white]),
        ('mode_L.png', pixels('L', [10, 200]), [(10, 10, 10), (200, 200, 200)]),
        ('mode_LA.png', pixels('LA', [(100, 0), (100, 255)]), [white, (100, 100, 100)]),
        ('mode_P.png', palette(False), [(255, 0, 0), (0, 0, 255)]),
        ('mode_P_transparent.png', palette(True), [white, (0, 0, 255)]),
        ('mode_RGBA.png', pixels('RGBA', [(255, 0, 0, 0), (10, 20, 30, 255)]),
         [white, (10, 20, 30)]),
        ('mode_CMYK.tif', pixels('CMYK', [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)]),
         [white, (0, 255, 255), (0, 0, 0)]),
        ('mode_I16.png', raw('I;16', grey16, '<u2'), grey16_rgb),
        ('mode_I16B.tif', raw('I;16B', grey16, '>u2'), grey16_rgb),
        ('mode_I.tif', raw('I', grey16, '<i4'), grey16_rgb),
        ('mode_F_unit.tif', raw('F', [0.0, 0.25, 1.0], '<f4'),
         [(0, 0, 0), (64, 64, 64), white]),
        ('mode_F.tif', raw('F', [0.0, 100.0, 300.0], '<f4'),
         [(0, 0, 0), (100, 100, 100), white]),
    ]

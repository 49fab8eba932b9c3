from mosaic.data import get_dataset
from mosaic.data.photos import write_sample_photos


def test_sample_photos_become_a_folder_dataset(tmp_path):
    path = write_sample_photos(tmp_path / "photos")
    files = sorted(path.glob("*.png"))
    assert len(files) >= 10
    assert write_sample_photos(path) == path and sorted(path.glob("*.png")) == files  # idempotent
    data = get_dataset(f"folder:{path}", "train")
    assert data.labels is None and data.images.shape[1:] == (3, 32, 32) and len(data) >= 5000

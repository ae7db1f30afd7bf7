"""The diagnosis head (issue 30 item 2): pooling under the lesion, shape descriptors, attention per video, streaming, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from flanet.models import CheckpointError, create_model, load_checkpoint, save_checkpoint
from flanet.models.diagnosis import (
    DiagnosisHead,
    RunningDiagnosis,
    clip_inputs,
    feature_channels,
    grouped_softmax,
    pooled_features,
    shape_descriptors,
)


@pytest.fixture(scope="module")
def small_model():
    """The smallest FLA-Net (MobileNetV3-small encoder, narrow neck and decoder), random weights, eval mode."""
    torch.manual_seed(0)
    return create_model("flanet", encoder="mobilenetv3_small_100", neck_channels=[16, 24, 48, 96],
                        decoder_channels=[64, 32, 24, 16], head_channels=16).eval()


def test_grouped_softmax_normalises_within_each_video():
    weights = grouped_softmax(torch.tensor([0.0, math.log(3.0), 5.0]), torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(weights, torch.tensor([0.25, 0.75, 1.0]))


def test_shape_descriptors_of_a_taller_than_wide_rectangle():
    weight = torch.zeros(1, 1, 10, 10)
    weight[0, 0, 2:6, 3:5] = 1.0  # 4 rows x 2 columns
    area, orientation, irregularity = shape_descriptors(weight)[0].tolist()
    assert area == pytest.approx(0.08)  # 8 of 100 pixels
    # var_y = (4^2 - 1) / 12 = 1.25, var_x = (2^2 - 1) / 12 = 0.25: 0.5 log((1.25 + 1) / (0.25 + 1))
    assert orientation == pytest.approx(0.5 * math.log(1.8), abs=1e-6)
    # perimeter 2 (4 + 2) = 12 over 2 sqrt(8 pi) + 1 = 11.026513
    assert irregularity == pytest.approx(12 / 11.026513, abs=1e-5)


def test_an_empty_map_has_zero_shape():
    assert shape_descriptors(torch.zeros(1, 1, 8, 8))[0].tolist() == [0.0, 0.0, 0.0]


def test_pooled_features_average_under_the_lesion_and_globally():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 0.0], [0.0, 30.0]]]])  # (1, 2, 2, 2)
    weight = torch.zeros(1, 1, 4, 4)
    weight[0, 0, :2, :2] = 1.0  # the top-left cell of the 2x2 map
    pooled = pooled_features(features, weight)[0]
    torch.testing.assert_close(pooled[:4], torch.tensor([1.0, 10.0, 2.5, 10.0]))
    assert pooled.shape == (2 * 2 + 3,)


def test_head_gives_one_logit_per_video_and_label_and_attention_sums_to_one_per_video():
    head = DiagnosisHead(4, ["pathology", "aln_metastasis"], hidden=8, attention=4)
    inputs = torch.randn(5, 2 * 4 + 3)
    out = head(inputs, torch.tensor([0, 0, 1, 1, 1]), 2)
    assert out.logits.shape == (2, 2)
    torch.testing.assert_close(torch.zeros(2).index_add(0, torch.tensor([0, 0, 1, 1, 1]), out.attention),
                               torch.ones(2))
    # a video's logits depend only on its own frames
    alone = head(inputs[2:], torch.zeros(3, dtype=torch.long), 1)
    torch.testing.assert_close(alone.logits[0], out.logits[1])


def test_running_estimate_equals_the_head_on_every_frame_so_far():
    torch.manual_seed(0)
    head = DiagnosisHead(3, ["malignant"], hidden=6, attention=4).eval()
    inputs = torch.randn(7, 9) * 3
    running = RunningDiagnosis(head)
    for end in range(1, 8):
        estimate = running.update(inputs[end - 1:end])
        whole = torch.sigmoid(head(inputs[:end], torch.zeros(end, dtype=torch.long), 1).logits[0])
        torch.testing.assert_close(estimate, whole, atol=1e-5, rtol=1e-5)
    full = head(inputs, torch.zeros(7, dtype=torch.long), 1).attention
    torch.testing.assert_close(running.attention(), full.detach(), atol=1e-5, rtol=1e-5)
    top = running.top_frames(2)
    assert [index for index, _ in top] == torch.argsort(full, descending=True)[:2].tolist()


def test_clip_inputs_read_the_model_through_its_contract(small_model):
    model = small_model
    channels = feature_channels(model)
    assert channels == model.encode(torch.zeros(1, 3, 64, 64))[-1].shape[1]
    clips = torch.randn(2, model.num_frames, 3, 64, 64)
    with torch.no_grad():
        inputs, output = clip_inputs(model, clips)
        expected = model(clips).mask_logits
    assert inputs.shape == (2, 2 * channels + 3)
    torch.testing.assert_close(output.mask_logits, expected, atol=1e-5, rtol=1e-4)


def test_checkpoint_carries_the_head_and_its_thresholds(small_model, tmp_path):
    model = small_model
    head = DiagnosisHead(feature_channels(model), ["pathology"], hidden=8, attention=4)
    path = save_checkpoint(tmp_path / "m.pt", model, {"image_size": 64}, diagnosis=head, thresholds={"pathology": 0.4})
    loaded = load_checkpoint(path)
    assert loaded.diagnosis.thresholds == {"pathology": 0.4}
    assert loaded.diagnosis.head.labels == ("pathology",)
    for key, value in head.state_dict().items():
        torch.testing.assert_close(loaded.diagnosis.head.state_dict()[key], value)
    assert load_checkpoint(save_checkpoint(tmp_path / "plain.pt", model)).diagnosis is None


def test_a_tampered_head_is_refused(small_model, tmp_path):
    model = small_model
    head = DiagnosisHead(feature_channels(model), ["pathology"], hidden=8, attention=4)
    path = save_checkpoint(tmp_path / "m.pt", model, diagnosis=head)
    payload = torch.load(path, weights_only=True)
    payload["diagnosis"]["state_dict"]["classify.bias"] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="diagnosis head's weights are corrupted"):
        load_checkpoint(path)


def test_standardise_uses_the_training_inputs_mean_and_spread_and_only_centres_a_constant():
    head = DiagnosisHead(1, ["pathology"], hidden=4, attention=2)
    plain = DiagnosisHead(1, ["pathology"], hidden=4, attention=2)
    plain.load_state_dict(head.state_dict())
    training = torch.tensor([[0.0, 5.0, 1.0, 0.0, 0.0], [2.0, 5.0, 3.0, 0.0, 0.0], [4.0, 5.0, 5.0, 3.0, 0.0]])
    head.standardize(training)
    torch.testing.assert_close(head.input_mean, torch.tensor([2.0, 5.0, 3.0, 1.0, 0.0]))
    # population std: sqrt(8 / 3) for 0, 2, 4 and 1, 3, 5; sqrt(2) for 0, 0, 3; constant columns keep scale 1
    torch.testing.assert_close(head.input_scale, torch.tensor([math.sqrt(8 / 3), 1.0, math.sqrt(8 / 3), math.sqrt(2), 1.0]))
    frames = torch.tensor([[1.0, 6.0, 2.0, 1.0, 7.0], [3.0, 4.0, 0.0, 2.0, -1.0]])
    groups = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(head(frames, groups, 1).logits,
                               plain((frames - head.input_mean) / head.input_scale, groups, 1).logits)


def test_a_head_stored_before_standardisation_loads_with_the_identity(small_model, tmp_path):
    from flanet.models.checkpoint import state_digest

    head = DiagnosisHead(feature_channels(small_model), ["pathology"], hidden=8, attention=4)
    path = save_checkpoint(tmp_path / "m.pt", small_model, diagnosis=head)
    payload = torch.load(path, weights_only=True)
    state = payload["diagnosis"]["state_dict"]
    del state["input_mean"], state["input_scale"]
    payload["diagnosis"]["state_sha256"] = state_digest(state)
    torch.save(payload, path)
    loaded = load_checkpoint(path).diagnosis.head
    assert loaded.input_mean.abs().max() == 0 and torch.equal(loaded.input_scale, torch.ones_like(loaded.input_scale))
    torch.testing.assert_close(loaded.classify.weight, head.classify.weight)

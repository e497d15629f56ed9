import torch
import torch.nn.functional as F

from art_train.ops import qr_attention, tracklet_link


def test_qr_attention_matches_sdpa_and_maps_sum_to_one():
    torch.manual_seed(0)
    n, k, length, d, h = 6, 2, 49, 64, 4
    q, kk, v = torch.randn(n, k, d), torch.randn(n, length, d), torch.randn(n, length, d)
    out, attn = qr_attention(q, kk, v, h, (d // h) ** -0.5)
    split = lambda x: x.reshape(n, -1, h, d // h).transpose(1, 2)  # noqa: E731
    ref = (
        F.scaled_dot_product_attention(split(q), split(kk), split(v))
        .transpose(1, 2)
        .reshape(n, k, d)
    )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert attn.shape == (n, k, length)
    torch.testing.assert_close(attn.sum(-1), torch.ones(n, k))


def test_qr_attention_map_peaks_on_the_matching_token():
    d = 32
    keys = torch.eye(d)[:16].unsqueeze(0) * 10  # token i points along axis i
    q = keys[:, [5, 11]]
    _, attn = qr_attention(q, keys, keys, 1, 1.0)
    assert attn[0, 0].argmax() == 5 and attn[0, 1].argmax() == 11


def test_tracklet_link_weights_sum_to_one_and_follow_relevance():
    torch.manual_seed(0)
    b, t, k, d = 2, 8, 2, 16
    sem = F.normalize(torch.randn(b, k, d), dim=-1)
    resp = torch.randn(b, t, k, d) * 0.1
    resp[:, 3] = sem * 5  # frame 3 matches the semantics best
    agg, sal, coh = tracklet_link(resp, sem, temperature=0.1)
    assert agg.shape == (b, k, d) and sal.shape == (b, t, k) and coh.shape == (b, t - 1, k)
    torch.testing.assert_close(sal.sum(1), torch.ones(b, k))
    assert (sal.argmax(1) == 3).all()
    torch.testing.assert_close(agg, (sal.unsqueeze(-1) * resp).sum(1))


def test_tracklet_link_coherence_is_adjacent_cosine():
    r = torch.randn(1, 5, 3, 8)
    _, _, coh = tracklet_link(r, torch.randn(1, 3, 8), 0.1)
    torch.testing.assert_close(coh[0, 2, 1], F.cosine_similarity(r[0, 2, 1], r[0, 3, 1], dim=0))

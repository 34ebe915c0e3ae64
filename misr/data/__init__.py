"""Data: raw corpora (MMSA-FET layout), media decoding, the synthetic set, the demo corpus, MMSA feature files."""

"""The harness starts the real servers: etcd answers, S3 stores bytes."""
import etcd3gw


def test_etcd_put_get(etcd_server):
    client = etcd3gw.client(host=etcd_server.host, port=etcd_server.port, timeout=5)
    assert client.put(b"/harness/probe", b"hello")
    assert client.get(b"/harness/probe") == [b"hello"]


def test_s3_upload_download(s3_server):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="harness-probe")
    payload = bytes(range(256)) * 4096
    s3.put_object(Bucket="harness-probe", Key="a/b.bin", Body=payload)
    assert s3.get_object(Bucket="harness-probe", Key="a/b.bin")["Body"].read() == payload

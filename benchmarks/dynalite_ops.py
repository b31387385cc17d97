#!/usr/bin/env python3
"""dynalite_ops.py - DynamoDB calls for the benchmarks, against the endpoint in
AWS_ENDPOINT_URL_DYNAMODB (dynalite: it checks no signature, so none is made).
  create TABLE                  a lease table (leaseKey HASH), waits until ACTIVE
  held TABLE PIPELINE OWNER     how many of PIPELINE's leases OWNER holds (one Scan)
  put TABLE ITEM_JSON           PutItem
"""
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

url = urllib.parse.urlparse(os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
conn.connect()
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libcurl does
HDR = {"Content-Type": "application/x-amz-json-1.0",
       "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200101/us-east-1/"
                        "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
       "X-Amz-Date": "20200101T000000Z"}


def call(op, body):
    h = dict(HDR)
    h["X-Amz-Target"] = "DynamoDB_20120810." + op
    conn.request("POST", "/", json.dumps(body).encode(), h)
    r = conn.getresponse()
    data = json.loads(r.read() or b"{}")
    return r.status, data


def main():
    cmd, table = sys.argv[1], sys.argv[2]
    if cmd == "create":
        st, d = call("CreateTable", {"TableName": table,
                                     "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
                                     "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                                     "BillingMode": "PAY_PER_REQUEST"})
        assert st == 200, d
        while call("DescribeTable", {"TableName": table})[1]["Table"]["TableStatus"] != "ACTIVE":
            time.sleep(0.05)
    elif cmd == "held":
        pipeline, owner = sys.argv[3], sys.argv[4]
        st, d = call("Scan", {"TableName": table, "ConsistentRead": True})
        assert st == 200, d
        print(sum(1 for it in d.get("Items", [])
                  if it.get("spatePipeline", {}).get("S") == pipeline
                  and it.get("leaseOwner", {}).get("S") == owner))
    elif cmd == "put":
        st, d = call("PutItem", {"TableName": table, "Item": json.loads(sys.argv[3])})
        assert st == 200, d
    else:
        sys.exit(__doc__)


main()

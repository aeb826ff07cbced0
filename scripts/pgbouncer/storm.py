"""N one-seat CreateBookings on one tour from C concurrent callers; prints outcomes."""
import asyncio, sys, uuid, collections
import grpc
from booking.v1 import booking_pb2 as pb, booking_pb2_grpc as rpc
async def main():
    addr, token, tour, n, c = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    meta = (("authorization", f"Bearer {token}"),)
    out = collections.Counter(); sem = asyncio.Semaphore(c)
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc.BookingServiceStub(ch)
        async def one():
            async with sem:
                try:
                    await stub.CreateBooking(pb.CreateBookingRequest(request_id=str(uuid.uuid4()), tour_id=tour, num_adults=1,
                        customer_name="Storm", customer_email="storm@example.com"), metadata=meta); out["OK"] += 1
                except grpc.aio.AioRpcError as e:
                    out[e.code().name + ":" + (e.details() or "")[:40]] += 1
        await asyncio.gather(*(one() for _ in range(n)))
    print(dict(out))
asyncio.run(main())

// gRPC server reflection (grpc.reflection.v1 and the older v1alpha that many tools still speak), so
// buf curl, grpcurl, Postman and grpcui can discover and call this server without a copy of proto/.
// Both versions share one index built from the generated descriptors: a file's FileDescriptorProto
// plus all transitive imports (google/protobuf/*.proto included) are sent as serialized bytes.
// Lookups that fail answer with an error_response (NOT_FOUND) inside the stream, as grpc-go does;
// the stream itself only ends when the client stops sending.

import {
  create,
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";

export const ServerReflectionV1 = v1.ServerReflection;
export const ServerReflectionV1alpha = v1alpha.ServerReflection;

export interface ReflectionServices {
  readonly v1: ServiceImpl<typeof v1.ServerReflection>;
  readonly v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
  /** Fully-qualified names reported by list_services, sorted. */
  readonly serviceNames: readonly string[];
  /** Registers both reflection services on the router. */
  register(router: ConnectRouter): void;
}

/** The request oneof, identical in shape for v1 and v1alpha. */
type Query =
  | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: undefined; value?: undefined };

/** The response oneof as init data, valid for both versions' ServerReflectionResponse. */
type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * `services`: every service the router serves (Health included); the reflection services add
 * themselves. `extraFiles`: files to expose beyond what the services reach (optional).
 */
export function createReflectionServices(
  services: readonly DescService[],
  extraFiles: readonly DescFile[] = [],
): ReflectionServices {
  const allServices = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  const serviceNames = [...new Set(allServices.map((s) => s.typeName))].sort();

  const files = new Map<string, DescFile>(); // by proto file name, e.g. "cairn/v1/workflow.proto"
  const symbols = new Map<string, DescFile>(); // fully-qualified name -> declaring file
  const extensions = new Map<string, DescExtension[]>(); // extendee type name -> extensions
  const messages = new Set<string>();

  const addExtension = (ext: DescExtension): void => {
    symbols.set(ext.typeName, ext.file);
    const list = extensions.get(ext.extendee.typeName) ?? [];
    list.push(ext);
    extensions.set(ext.extendee.typeName, list);
  };
  const addEnum = (e: DescEnum, scope: string): void => {
    symbols.set(e.typeName, e.file);
    // Enum values are scoped as siblings of their enum.
    for (const value of e.values) symbols.set(scope ? `${scope}.${value.name}` : value.name, e.file);
  };
  const addMessage = (m: DescMessage): void => {
    symbols.set(m.typeName, m.file);
    messages.add(m.typeName);
    for (const field of m.fields) symbols.set(`${m.typeName}.${field.name}`, m.file);
    for (const oneof of m.oneofs) symbols.set(`${m.typeName}.${oneof.name}`, m.file);
    for (const nested of m.nestedMessages) addMessage(nested);
    for (const nested of m.nestedEnums) addEnum(nested, m.typeName);
    for (const nested of m.nestedExtensions) addExtension(nested);
  };
  const addFile = (file: DescFile): void => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dep of file.dependencies) addFile(dep);
    const pkg = file.proto.package;
    for (const m of file.messages) addMessage(m);
    for (const e of file.enums) addEnum(e, pkg);
    for (const ext of file.extensions) addExtension(ext);
    for (const s of file.services) {
      symbols.set(s.typeName, file);
      for (const method of s.methods) symbols.set(`${s.typeName}.${method.name}`, file);
    }
  };
  for (const s of allServices) addFile(s.file);
  for (const f of extraFiles) addFile(f);

  const encoded = new Map<string, Uint8Array>();
  const encode = (file: DescFile): Uint8Array => {
    let bytes = encoded.get(file.proto.name);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      encoded.set(file.proto.name, bytes);
    }
    return bytes;
  };

  /** The file first, then its transitive imports, each once. */
  const withDependencies = (file: DescFile): Answer => {
    const out: DescFile[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile): void => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(f);
      for (const dep of f.dependencies) visit(dep);
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out.map(encode) } };
  };

  const notFound = (message: string): Answer => ({
    case: "errorResponse",
    value: { errorCode: Code.NotFound, errorMessage: message },
  });

  const answer = (query: Query): Answer => {
    switch (query.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = files.get(query.value);
        return file ? withDependencies(file) : notFound(`file not found: ${query.value}`);
      }
      case "fileContainingSymbol": {
        const file = symbols.get(query.value.replace(/^\./, ""));
        return file ? withDependencies(file) : notFound(`symbol not found: ${query.value}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = query.value;
        const ext = extensions.get(containingType)?.find((x) => x.number === extensionNumber);
        return ext
          ? withDependencies(ext.file)
          : notFound(`extension not found: ${containingType} ${extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        if (!messages.has(query.value)) return notFound(`type not found: ${query.value}`);
        const numbers = (extensions.get(query.value) ?? []).map((x) => x.number).sort((a, b) => a - b);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: query.value, extensionNumber: numbers } };
      }
      default:
        return {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "empty message_request" },
        };
    }
  };

  const implV1: ServiceImpl<typeof v1.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req.messageRequest),
        });
      }
    },
  };
  const implV1alpha: ServiceImpl<typeof v1alpha.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse: answer(req.messageRequest),
        });
      }
    },
  };

  return {
    v1: implV1,
    v1alpha: implV1alpha,
    serviceNames,
    register(router) {
      router.service(v1.ServerReflection, implV1);
      router.service(v1alpha.ServerReflection, implV1alpha);
    },
  };
}
